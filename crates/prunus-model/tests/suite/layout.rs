//! llama.cpp's Q/K row permutation: interleaved RoPE on the GGUF layout equals rotate_half
//! RoPE on the un-permuted (Hugging Face) layout.

use crate::common;

use candle_core::{Device, Tensor};
use candle_nn::rotary_emb::{rope, rope_i};
use common::max_abs_diff;
use prunus_model::layout::{permute_qk_to_gguf, unpermute_qk_from_gguf};
use prunus_core::rng::SplitMix64;

fn random(shape: (usize, usize), seed: u64) -> Tensor {
    let mut r = SplitMix64::new(seed);
    let v: Vec<f32> = (0..shape.0 * shape.1).map(|_| r.uniform(1.0)).collect();
    Tensor::from_vec(v, shape, &Device::Cpu).unwrap()
}

/// (seq, d_in) activations times (n_head*hd, d_in) weights -> (1, n_head, seq, hd).
fn heads(x: &Tensor, w: &Tensor, n_head: usize) -> Tensor {
    let (seq, _) = x.dims2().unwrap();
    let y = x.matmul(&w.t().unwrap()).unwrap();
    let hd = y.dim(1).unwrap() / n_head;
    y.reshape((1, seq, n_head, hd)).unwrap().transpose(1, 2).unwrap().contiguous().unwrap()
}

fn cos_sin(seq: usize, hd: usize, theta: f64) -> (Tensor, Tensor) {
    let mut c = Vec::new();
    let mut s = Vec::new();
    for p in 0..seq {
        for i in 0..hd / 2 {
            let a = p as f64 / theta.powf(2.0 * i as f64 / hd as f64);
            c.push(a.cos() as f32);
            s.push(a.sin() as f32);
        }
    }
    (Tensor::from_vec(c, (seq, hd / 2), &Device::Cpu).unwrap(), Tensor::from_vec(s, (seq, hd / 2), &Device::Cpu).unwrap())
}

#[test]
fn unpermute_inverts_permute() {
    for (n_head, hd, d_in) in [(9, 64, 20), (3, 64, 7), (4, 8, 32), (1, 2, 3)] {
        let w = random((n_head * hd, d_in), n_head as u64);
        let g = permute_qk_to_gguf(&w, n_head).unwrap();
        assert!(max_abs_diff(&g, &w) > 0.0 || hd == 2);
        assert_eq!(max_abs_diff(&unpermute_qk_from_gguf(&g, n_head).unwrap(), &w), 0.0);
        assert_eq!(max_abs_diff(&permute_qk_to_gguf(&unpermute_qk_from_gguf(&w, n_head).unwrap(), n_head).unwrap(), &w), 0.0);
    }
    assert!(permute_qk_to_gguf(&random((10, 4), 0), 3).is_err());
    assert!(unpermute_qk_from_gguf(&random((12, 4), 0), 4).is_err()); // odd head_dim
}

#[test]
fn interleaved_rope_on_gguf_layout_equals_rotate_half_on_hf_layout() {
    let (seq, d_in, theta) = (17, 24, 100_000.0);
    for (n_head, n_kv, hd) in [(9, 3, 64), (4, 2, 8)] {
        let x = random((seq, d_in), 1);
        // The GGUF file holds permuted rows; we un-permute them.
        let wq_gguf = random((n_head * hd, d_in), 2);
        let wk_gguf = random((n_kv * hd, d_in), 3);
        let wq_hf = unpermute_qk_from_gguf(&wq_gguf, n_head).unwrap();
        let wk_hf = unpermute_qk_from_gguf(&wk_gguf, n_kv).unwrap();
        let (c, s) = cos_sin(seq, hd, theta);

        let q_i = rope_i(&heads(&x, &wq_gguf, n_head), &c, &s).unwrap();
        let k_i = rope_i(&heads(&x, &wk_gguf, n_kv), &c, &s).unwrap();
        let q_h = rope(&heads(&x, &wq_hf, n_head), &c, &s).unwrap();
        let k_h = rope(&heads(&x, &wk_hf, n_kv), &c, &s).unwrap();

        // Same vectors up to the per-head permutation of the head dimension: un-permuting the
        // interleaved result (as rows of a (n_head*hd, seq) matrix) gives the rotate_half one.
        let as_rows = |t: &Tensor, nh: usize| t.squeeze(0).unwrap().transpose(1, 2).unwrap().contiguous().unwrap().reshape((nh * hd, seq)).unwrap();
        let q_i_hf = unpermute_qk_from_gguf(&as_rows(&q_i, n_head), n_head).unwrap();
        assert!(max_abs_diff(&q_i_hf, &as_rows(&q_h, n_head)) < 1e-4);
        let k_i_hf = unpermute_qk_from_gguf(&as_rows(&k_i, n_kv), n_kv).unwrap();
        assert!(max_abs_diff(&k_i_hf, &as_rows(&k_h, n_kv)) < 1e-4);

        // And identical attention scores, head by head (GQA: head h reads KV head h / n_rep).
        let rep = n_head / n_kv;
        for h in 0..n_head {
            let g = h / rep;
            let sc = |q: &Tensor, k: &Tensor| {
                let qh = q.get(0).unwrap().get(h).unwrap();
                let kh = k.get(0).unwrap().get(g).unwrap();
                qh.matmul(&kh.t().unwrap()).unwrap()
            };
            assert!(max_abs_diff(&sc(&q_i, &k_i), &sc(&q_h, &k_h)) < 1e-3);
        }
    }
}
