//! Fidelity against the independent numpy reference (scripts/reference/reference.py):
//! tokenization, the calibration sampler, the dense perplexity, the Wanda statistics, and the
//! magnitude and Wanda masks of block 0. Runs on the real default model (fetched by
//! `cargo xtask test` before the suite).

use std::path::PathBuf;
use std::sync::OnceLock;

use candle_core::{Device, Tensor};
use prunus_core::pipeline::{PipelineOptions, prune_layerwise};
use prunus_core::{Pattern, PrunableModel, StatKind, Stats, registry};
use prunus_model::LlamaModel;
use serde_json::Value;

struct Setup {
    model: LlamaModel,
    eval: Vec<u32>,
    calib: Vec<u32>,
}

fn setup() -> &'static Setup {
    static SETUP: OnceLock<Setup> = OnceLock::new();
    SETUP.get_or_init(|| {
        prunus_all::link();
        let path = prunus_data::assets::default_model_path().expect("default model (run `cargo xtask assets`)");
        let model = LlamaModel::load(&path, &Device::Cpu).expect("load the default model");
        let tok = prunus_data::tokenizer::from_gguf(&path).expect("tokenizer");
        let corpus = prunus_data::corpus::wiki_vital(&prunus_data::assets::wiki_vital_path().unwrap()).unwrap();
        let eval = prunus_data::tokenizer::encode_cached(&tok, &corpus.eval_text).unwrap();
        let calib = prunus_data::tokenizer::encode_cached(&tok, &corpus.calib_text).unwrap();
        Setup { model, eval, calib }
    })
}

fn fixtures() -> PathBuf {
    std::path::PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").unwrap_or_else(|| env!("CARGO_MANIFEST_DIR").into())).join("../../scripts/reference/fixtures")
}

fn json(name: &str) -> Value {
    serde_json::from_str(&std::fs::read_to_string(fixtures().join(name)).unwrap()).unwrap()
}

fn ids(v: &Value) -> Vec<u32> {
    v.as_array().unwrap().iter().map(|x| x.as_u64().unwrap() as u32).collect()
}

#[test]
fn tokenization_matches_the_reference() {
    let s = setup();
    let d = json("dense_ppl.json");
    assert_eq!(s.eval.len() as u64, d["n_eval_tokens"].as_u64().unwrap());
    assert_eq!(s.calib.len() as u64, d["n_calib_tokens"].as_u64().unwrap());
    assert_eq!(&s.eval[..512], &ids(&d["first_window_token_ids"])[..]);
    let last = d["last_window_index"].as_u64().unwrap() as usize;
    assert_eq!(&s.eval[last * 512..(last + 1) * 512], &ids(&d["last_window_token_ids"])[..]);
    assert_eq!(&s.calib[..64], &ids(&d["first_pool_token_ids_64"])[..]);
}

#[test]
fn calibration_offsets_match_cpython() {
    let s = setup();
    let d = json("calib_offsets.json");
    assert_eq!(s.calib.len() as u64, d["n_pool_tokens"].as_u64().unwrap());
    for sampler in d["samplers"].as_array().unwrap() {
        let (seed, n, len) = (sampler["seed"].as_u64().unwrap(), sampler["n_samples"].as_u64().unwrap(), sampler["seq_len"].as_u64().unwrap());
        let got = prunus_data::corpus::calibration_offsets(s.calib.len(), n as usize, len as usize, seed).unwrap();
        let want: Vec<usize> = sampler["offsets"].as_array().unwrap().iter().map(|x| x.as_u64().unwrap() as usize).collect();
        assert_eq!(got, want, "seed {seed}, {n} x {len}");
    }
}

#[test]
fn dense_perplexity_matches_the_reference() {
    let s = setup();
    let d = json("dense_ppl.json");
    let tokens = Tensor::from_vec(s.eval[..4 * 512].to_vec(), (4, 512), &Device::Cpu).unwrap();
    let mut nll = |t: &Tensor| -> prunus_eval::Result<Vec<f64>> { Ok(s.model.nll(t).map_err(prunus_core::Error::from)?) };
    let r = prunus_eval::perplexity("wiki-vital", &s.eval, 512, 4, 2, &mut nll, &mut |_| {}).unwrap();
    let want = d["ppl_first4"].as_f64().unwrap();
    let rel = (r.ppl - want).abs() / want;
    assert!(rel < 1e-3, "dense ppl {} vs reference {want} (relative {rel:.2e})", r.ppl);
    // Window by window, too.
    let windows = d["windows"].as_array().unwrap();
    let direct = s.model.nll(&tokens).unwrap();
    for (i, got) in direct.iter().enumerate() {
        let want = windows[i]["nll_sum"].as_f64().unwrap();
        assert!((got - want).abs() / want < 1e-5, "window {i}: NLL {got} vs {want}");
    }
}

/// Reads a little-endian packed bit mask (numpy packbits, bitorder little).
fn read_bits(name: &str, n: usize) -> Vec<bool> {
    let bytes = std::fs::read(fixtures().join("block0").join(name)).unwrap();
    (0..n).map(|i| bytes[i / 8] >> (i % 8) & 1 == 1).collect()
}

fn read_f32(name: &str) -> Vec<f32> {
    std::fs::read(fixtures().join("block0").join(name)).unwrap().chunks(4).map(|c| f32::from_le_bytes(c.try_into().unwrap())).collect()
}

/// Block-0 calibration of the fixture (seed 0, 4 x 128 from the pool) and our statistics.
fn block0_calibration(s: &Setup) -> (Tensor, std::collections::BTreeMap<String, Stats>) {
    let offsets = prunus_data::corpus::calibration_offsets(s.calib.len(), 4, 128, 0).unwrap();
    let ids: Vec<u32> = offsets.iter().flat_map(|&o| s.calib[o..o + 128].iter().copied()).collect();
    let tokens = Tensor::from_vec(ids, (4, 128), &Device::Cpu).unwrap();
    let mut stats = std::collections::BTreeMap::new();
    let h = PrunableModel::embed(&s.model, &tokens).unwrap();
    let mut cap = |site: &str, x: &Tensor| -> prunus_core::Result<()> {
        stats.entry(site.to_string()).or_insert_with(|| Stats::new(StatKind::SqNorm, x.dim(1).unwrap())).add(x, 4)
    };
    PrunableModel::block_forward(&s.model, 0, &h, Some(&mut cap)).unwrap();
    (tokens, stats)
}

#[test]
fn wanda_statistics_match_the_reference() {
    let s = setup();
    let (_, stats) = block0_calibration(s);
    for site in ["attn_in", "attn_out", "mlp_in", "mlp_act"] {
        let want = read_f32(&format!("scaler_{site}.f32"));
        let got = stats[site].mean_sq_per_sample().unwrap();
        assert_eq!(got.len(), want.len());
        for (j, (g, w)) in got.iter().zip(&want).enumerate() {
            let rel = (g - f64::from(*w)).abs() / f64::from(*w).max(1e-12);
            assert!(rel < 1e-4, "{site}[{j}]: {g} vs reference {w}");
        }
    }
}

/// Prunes a copy of the model with `method` at `pattern`, calibrated like the fixture, and
/// compares the block-0 masks with the reference's, allowing differences only at ties.
fn compare_block0(method: &str, pattern: Pattern, file_tag: &str) {
    let s = setup();
    let (tokens, stats) = block0_calibration(s);
    let mut model = s.model.clone();
    let m = registry::find(method).unwrap().build_layerwise(&Value::Null).unwrap();
    prune_layerwise(&mut model, &m, &pattern, Some(&tokens), &PipelineOptions { batch_size: 4 }, &mut |_| {}).unwrap();
    for lin in s.model.linears(0) {
        let dense = s.model.weight(0, &lin.name).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap();
        let pruned = model.weight(0, &lin.name).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap();
        let ours: Vec<bool> = pruned.iter().zip(&dense).map(|(p, d)| *p == 0.0 && *d != 0.0).collect();
        let reference = read_bits(&format!("{method}_{file_tag}_{}.bits", lin.name), dense.len());
        // Scores as the reference defines them, from our statistics.
        let scaler = stats[&lin.input_site].mean_sq_per_sample().unwrap();
        let score = |i: usize| -> f64 {
            let w = f64::from(dense[i].abs());
            if method == "wanda" { w * scaler[i % lin.d_in].sqrt() } else { w }
        };
        let mut mismatches = 0;
        for i in 0..dense.len() {
            // An originally zero weight is pruned or not at no cost: both sides may differ there.
            if ours[i] == reference[i] || dense[i] == 0.0 {
                continue;
            }
            mismatches += 1;
            // The group the entry competed in, and the boundary between pruned and kept there.
            let group: Vec<usize> = match pattern {
                Pattern::NM { m, .. } => (i / m * m..i / m * m + m).collect(),
                Pattern::Unstructured { .. } if method == "wanda" => (i / lin.d_in * lin.d_in..(i / lin.d_in + 1) * lin.d_in).collect(),
                Pattern::Unstructured { .. } => (0..dense.len()).collect(),
            };
            let max_pruned = group.iter().filter(|&&j| ours[j]).map(|&j| score(j)).fold(f64::MIN, f64::max);
            let min_kept = group.iter().filter(|&&j| !ours[j]).map(|&j| score(j)).fold(f64::MAX, f64::min);
            let tol = 1e-5 * max_pruned.abs().max(1e-12);
            assert!(
                (score(i) - max_pruned).abs() <= tol || (score(i) - min_kept).abs() <= tol,
                "{method} {pattern} blk.0.{}[{i}]: ours pruned={} reference pruned={}, score {} is not at the group boundary ({max_pruned} / {min_kept})",
                lin.name, ours[i], reference[i], score(i)
            );
        }
        assert!(mismatches * 1000 <= dense.len(), "{method} {pattern} blk.0.{}: {mismatches} tie differences", lin.name);
    }
}

#[test]
fn magnitude_masks_match_the_reference() {
    compare_block0("magnitude", Pattern::Unstructured { sparsity: 0.5 }, "unstructured50");
    compare_block0("magnitude", Pattern::NM { n: 2, m: 4 }, "2of4");
}

#[test]
fn wanda_masks_match_the_reference() {
    compare_block0("wanda", Pattern::Unstructured { sparsity: 0.5 }, "unstructured50");
    compare_block0("wanda", Pattern::NM { n: 2, m: 4 }, "2of4");
}
