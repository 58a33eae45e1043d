//! Sparse checkpoints (compressed-tensors' sparse-bitmask layout): a pruned model saved with
//! `SaveOptions::sparse` loads back bit for bit, the four tensors of each linear follow the
//! layout (checked against an independent decode of the bits), the file shrinks with the
//! sparsity, and every kind of corruption is refused with an error naming the tensor.

use std::collections::HashMap;
use std::path::Path;

use candle_core::{Device, Tensor};
use prunus_model::{LlamaConfig, LlamaModel, SaveOptions};
use safetensors::{Dtype, SafeTensors};

/// The tiny model with a seeded ~70% of every block linear's weights zeroed (some as -0.0).
fn pruned(seed: u64) -> LlamaModel {
    let model = LlamaModel::synthetic(LlamaConfig::new(64, 40, 52, 2, 4, 2, true), seed).unwrap();
    let mut out = model.clone();
    let mut rng = prunus_core::rng::SplitMix64::new(seed);
    for (name, t) in model.named_tensors() {
        if name.ends_with("_proj.weight") {
            let w: Vec<f32> = t.flatten_all().unwrap().to_vec1::<f32>().unwrap();
            let w: Vec<f32> = w.iter().enumerate().map(|(i, &v)| if rng.next_f32() < 0.7 { if i % 11 == 0 { -0.0 } else { 0.0 } } else { v }).collect();
            out.set_tensor(&name, &Tensor::from_vec(w, t.dims(), t.device()).unwrap()).unwrap();
        }
    }
    out
}

fn save(model: &LlamaModel, out: &Path, sparse: bool) {
    model.save_hf_dir(out, &SaveOptions { tokenizer_json: None, overwrite: true, sparse }).unwrap();
}

fn bits(t: &Tensor) -> Vec<u32> {
    t.flatten_all().unwrap().to_vec1::<f32>().unwrap().iter().map(|v| v.to_bits()).collect()
}

#[test]
fn a_sparse_checkpoint_loads_back_bit_for_bit_and_is_smaller() {
    let dir = tempfile::tempdir().unwrap();
    let model = pruned(3);
    let (sparse, dense) = (dir.path().join("sparse"), dir.path().join("dense"));
    save(&model, &sparse, true);
    save(&model, &dense, false);
    let back = LlamaModel::from_hf_dir(&sparse, &Device::Cpu).unwrap();
    for ((name, a), (_, b)) in model.named_tensors().into_iter().zip(back.named_tensors()) {
        assert_eq!(bits(a), bits(b), "{name}");
    }
    let size = |d: &Path| std::fs::metadata(d.join("model.safetensors")).unwrap().len();
    assert!(size(&sparse) < size(&dense), "{} vs {}", size(&sparse), size(&dense));
    // The config says how the weights are stored; a dense save says nothing.
    let cfg: serde_json::Value = serde_json::from_slice(&std::fs::read(sparse.join("config.json")).unwrap()).unwrap();
    let sc = &cfg["quantization_config"]["sparsity_config"];
    assert_eq!(cfg["quantization_config"]["quant_method"], "compressed-tensors");
    assert_eq!(sc["format"], "sparse-bitmask");
    assert_eq!(sc["sparsity_structure"], "unstructured");
    let g = sc["global_sparsity"].as_f64().unwrap();
    assert!((0.65..0.75).contains(&g), "{g}");
    let dcfg: serde_json::Value = serde_json::from_slice(&std::fs::read(dense.join("config.json")).unwrap()).unwrap();
    assert!(dcfg.get("quantization_config").is_none());
    // The tensor-at-a-time reader (`prunus inspect`, `prune --stream`) reads it as well.
    let (a, b) = (prunus_model::stream::inspect_dir(&sparse).unwrap(), prunus_model::stream::inspect_dir(&dense).unwrap());
    assert_eq!(a.2, b.2);
    assert!(a.2.iter().all(|l| l.zeros * 10 > l.numel * 6), "{:?}", a.2);
    // Saving the loaded model again gives the same bytes.
    let again = dir.path().join("again");
    save(&back, &again, true);
    assert_eq!(std::fs::read(again.join("model.safetensors")).unwrap(), std::fs::read(sparse.join("model.safetensors")).unwrap());
}

#[test]
fn the_four_tensors_follow_the_bitmask_layout() {
    let dir = tempfile::tempdir().unwrap();
    let model = pruned(5);
    let out = dir.path().join("m");
    save(&model, &out, true);
    let bytes = std::fs::read(out.join("model.safetensors")).unwrap();
    let st = SafeTensors::deserialize(&bytes).unwrap();
    let name = "model.layers.1.mlp.down_proj";
    assert!(st.tensor(&format!("{name}.weight")).is_err(), "the dense weight is not stored");
    let w = model.named_tensors().into_iter().find(|(n, _)| n == &format!("{name}.weight")).unwrap().1.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    let (rows, cols) = (40, 52);
    let shape = st.tensor(&format!("{name}.shape")).unwrap();
    assert_eq!((shape.dtype(), shape.data()), (Dtype::I64, [40i64, 52].iter().flat_map(|d| d.to_le_bytes()).collect::<Vec<u8>>().as_slice()));
    let mask = st.tensor(&format!("{name}.bitmask")).unwrap();
    assert_eq!((mask.dtype(), mask.shape()), (Dtype::U8, &[rows, 7][..]));
    let values = st.tensor(&format!("{name}.compressed")).unwrap();
    let offsets = st.tensor(&format!("{name}.row_offsets")).unwrap();
    assert_eq!((offsets.dtype(), offsets.shape()), (Dtype::I64, &[rows][..]));
    // Decode the way numpy's unpackbits(bitorder="little") and compressed-tensors do.
    let vals: Vec<f32> = values.data().chunks_exact(4).map(|b| f32::from_le_bytes(b.try_into().unwrap())).collect();
    let offs: Vec<i64> = offsets.data().chunks_exact(8).map(|b| i64::from_le_bytes(b.try_into().unwrap())).collect();
    let mut k = 0;
    for r in 0..rows {
        assert_eq!(offs[r], k as i64, "row {r}");
        for c in 0..cols {
            let on = mask.data()[r * 7 + c / 8] >> (c % 8) & 1 == 1;
            assert_eq!(on, w[r * cols + c].to_bits() != 0, "row {r} col {c}");
            if on {
                assert_eq!(vals[k].to_bits(), w[r * cols + c].to_bits());
                k += 1;
            }
        }
    }
    assert_eq!(k, vals.len());
}

/// The tensors of a saved sparse checkpoint with `edit` applied, written back.
fn corrupt(dir: &Path, edit: impl FnOnce(&mut HashMap<String, (Dtype, Vec<usize>, Vec<u8>)>)) {
    let path = dir.join("model.safetensors");
    let bytes = std::fs::read(&path).unwrap();
    let st = SafeTensors::deserialize(&bytes).unwrap();
    let mut map: HashMap<String, (Dtype, Vec<usize>, Vec<u8>)> = st.tensors().into_iter().map(|(n, v)| (n, (v.dtype(), v.shape().to_vec(), v.data().to_vec()))).collect();
    edit(&mut map);
    let views: Vec<(String, safetensors::tensor::TensorView<'_>)> =
        map.iter().map(|(n, (d, s, b))| (n.clone(), safetensors::tensor::TensorView::new(*d, s.clone(), b).unwrap())).collect();
    safetensors::serialize_to_file(views, None, &path).unwrap();
}

#[test]
fn corrupt_sparse_tensors_are_refused_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let model = pruned(7);
    let good = dir.path().join("good");
    save(&model, &good, true);
    let p = "model.layers.0.self_attn.q_proj";
    type Edit = Box<dyn FnOnce(&mut HashMap<String, (Dtype, Vec<usize>, Vec<u8>)>)>;
    let cases: Vec<(&str, Edit)> = vec![
        ("bitmask sets more", Box::new(move |m| {
            let b = &mut m.get_mut(&format!("{p}.bitmask")).unwrap().2;
            // One more bit set in the last row (q_proj rows fill whole bytes).
            let i = b.iter().rposition(|&x| x != 0xff).unwrap();
            b[i] |= !b[i] & b[i].wrapping_add(1);
        })),
        ("holds", Box::new(move |m| {
            let v = &mut m.get_mut(&format!("{p}.compressed")).unwrap();
            v.2.truncate(v.2.len() - 4);
            v.1 = vec![v.1[0] - 1];
        })),
        ("row_offsets", Box::new(move |m| {
            let o = &mut m.get_mut(&format!("{p}.row_offsets")).unwrap().2;
            o[8] ^= 1; // row 1 starts one value off
        })),
        ("past column", Box::new(move |m| {
            // q_proj's 40 inputs fill 5 bytes exactly; down_proj's 52 leave 4 spare bits in 7.
            let b = &mut m.get_mut("model.layers.0.mlp.down_proj.bitmask").unwrap().2;
            b[6] |= 0x80;
        })),
        ("`.shape`", Box::new(move |m| {
            m.get_mut(&format!("{p}.shape")).unwrap().2[0] = 41;
        })),
        ("`.row_offsets` is missing", Box::new(move |m| {
            m.remove(&format!("{p}.row_offsets"));
        })),
    ];
    for (i, (want, edit)) in cases.into_iter().enumerate() {
        let bad = dir.path().join(format!("bad{i}"));
        save(&model, &bad, true);
        corrupt(&bad, edit);
        let e = LlamaModel::from_hf_dir(&bad, &Device::Cpu).unwrap_err().to_string();
        assert!(e.contains("sparse tensor") && e.contains(want), "case {i}: {e}");
        assert!(!e.contains('\n'), "one line: {e}");
    }
    // Quantized checkpoints are refused, not misread.
    let q = dir.path().join("quantized");
    save(&model, &q, true);
    let mut cfg: serde_json::Value = serde_json::from_slice(&std::fs::read(q.join("config.json")).unwrap()).unwrap();
    cfg["quantization_config"]["config_groups"] = serde_json::json!({"group_0": {"weights": {"num_bits": 4}}});
    std::fs::write(q.join("config.json"), serde_json::to_vec(&cfg).unwrap()).unwrap();
    let e = LlamaModel::from_hf_dir(&q, &Device::Cpu).unwrap_err().to_string();
    assert!(e.contains("quantized"), "{e}");
}
