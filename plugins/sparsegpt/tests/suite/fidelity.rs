//! Compares the plugin with the independent numpy reference
//! (`scripts/reference/sparsegpt_reference.py`, fixtures in `scripts/reference/fixtures/sparsegpt/`).
//!
//! Masks must be equal exactly (the fixture records that its thresholds and N:M groups have no
//! ties); updated weights within 1e-4 of the largest |W| (the two sides differ only in the
//! summation order of the f32 lazy-batch product and in the last bits of the f64 factorization).

use std::path::PathBuf;

use prunus_core::{Decision, LayerView, Pattern, Stats, registry};
use prunus_sparsegpt as _;

fn dir() -> PathBuf {
    std::path::PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").unwrap_or_else(|| env!("CARGO_MANIFEST_DIR").into())).join("../../scripts/reference/fixtures/sparsegpt")
}

fn f32s(name: &str) -> Vec<f32> {
    let bytes = std::fs::read(dir().join(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
    bytes.chunks_exact(4).map(|c| f32::from_le_bytes(c.try_into().unwrap())).collect()
}

fn bits(name: &str, n: usize) -> Vec<bool> {
    let bytes = std::fs::read(dir().join(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
    (0..n).map(|i| bytes[i / 8] >> (i % 8) & 1 == 1).collect()
}

#[test]
fn matches_the_numpy_reference() {
    let index: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir().join("index.json")).unwrap()).unwrap();
    let d_out = index["d_out"].as_u64().unwrap() as usize;
    let d_in = index["d_in"].as_u64().unwrap() as usize;
    let n_samples = index["n_samples"].as_u64().unwrap() as usize;
    let n_tokens = index["n_tokens"].as_u64().unwrap() as usize;
    let w = f32s("W.f32");
    let x = f32s("X.f32");
    assert_eq!((w.len(), x.len()), (d_out * d_in, n_tokens * d_in));
    let mut gram = vec![0f64; d_in * d_in];
    for row in x.chunks_exact(d_in) {
        for i in 0..d_in {
            let xi = f64::from(row[i]);
            if xi != 0.0 {
                for j in 0..d_in {
                    gram[i * d_in + j] += xi * f64::from(row[j]);
                }
            }
        }
    }
    let stats = Stats { d_in, n_samples, n_tokens, sq_sum: None, gram: Some(gram) };
    let view = LayerView { block: 0, name: "fixture.linear", d_out, d_in, weight: &w, stats: &stats };
    let scale = index["weight_scale_max_abs"].as_f64().unwrap() as f32;
    for case in index["cases"].as_array().unwrap() {
        let name = case["name"].as_str().unwrap();
        let config = serde_json::json!({
            "percdamp": index["percdamp"].as_f64().unwrap(),
            "blocksize": case["blocksize"].as_u64().unwrap(),
        });
        let method = registry::find("sparsegpt").unwrap().build_layerwise(&config).unwrap();
        let pattern = match case["prunen"].as_u64().unwrap() {
            0 => Pattern::Unstructured { sparsity: case["sparsity"].as_f64().unwrap() },
            n => Pattern::NM { n: n as usize, m: case["prunem"].as_u64().unwrap() as usize },
        };

        let Decision::MaskAndWeights { mask, weight } = prunus_testkit::decide(&method, &view, &pattern).map(|d| d.0).unwrap() else {
            panic!("{name}: sparsegpt must return mask and weights");
        };
        let want_mask = bits(case["mask"].as_str().unwrap(), d_out * d_in);
        let want_w = f32s(case["weight"].as_str().unwrap());
        let flips = mask.as_slice().iter().zip(&want_mask).filter(|(a, b)| a != b).count();
        assert_eq!(flips, 0, "{name}: {flips} mask entries differ from the reference");
        assert_eq!(mask.n_pruned() as u64, case["n_pruned"].as_u64().unwrap(), "{name}");
        let max_diff = weight.iter().zip(&want_w).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
        eprintln!("{name}: pruned {} (sparsity {:.5}), max |dW| vs reference {max_diff:e} (scale {scale})",
            mask.n_pruned(), mask.sparsity());
        assert!(max_diff <= 1e-4 * scale, "{name}: weights differ by {max_diff} (> 1e-4 * {scale})");
        assert!(weight.iter().zip(mask.as_slice()).all(|(w, &p)| !p || *w == 0.0), "{name}: pruned weight not zero");
    }
}
